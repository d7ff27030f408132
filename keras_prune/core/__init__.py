"""Pure math and value objects: masks, schedules, granularities, mask types, criteria,
allocations, regularizers, and the argument checks and registry they share.

Users reach these as `kp.schedules`, `kp.granularity`, `kp.mask_types`, `kp.criteria`,
`kp.allocation`, `kp.masks` and `kp.regularizers`.
"""
