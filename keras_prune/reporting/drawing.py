"""Pictures of a model's structure: `groups_svg` draws its channel dependency groups."""

import keras

from keras_prune.core import validation
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_ROLE_LETTER = {"output": "O", "input": "I", "channelwise": "C"}


def groups_svg(model, title="Channel groups"):
    """An SVG picture (a string) of the channel groups of `model` (or of a list of `Group`s):
    one row per layer in graph order, one column per group; a cell
    says how the layer touches the group's channels: O creates them (kernel columns, bias),
    C scales them one by one (BatchNorm, depthwise), I consumes them (kernel rows). Groups that
    must be kept whole are hatched grey, with the reason underneath.

    Example:

    ```python
    from keras_prune.reporting.drawing import groups_svg

    open("groups.svg", "w").write(groups_svg(model))
    ```
    """
    validation.check_model("model", model)
    names = []
    if isinstance(model, keras.Model):
        groups = groups_lib.channel_groups(model)
        names = [call.name for call in tracing.trace(model).calls if call.is_layer]
        involved = {name for group in groups for name in group.layer_names}
        names = [name for name in dict.fromkeys(names) if name in involved]
    else:
        groups = list(model)
    for group in groups:
        for name in group.layer_names:
            if name not in names:
                names.append(name)
    cell, left, top = 34, 190, 70
    width = max(left + cell * len(groups) + 20, 9 * len(title) + 20, 440)
    kept = [group for group in groups if not group.prunable]
    height = top + cell * len(names) + 30 + 18 * len(kept)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>',
        f'<text x="10" y="20" font-size="15" font-weight="bold">{_escape(title)}</text>',
    ]
    for column, group in enumerate(groups):
        x = left + column * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 22}" text-anchor="middle">g{group.index}</text>'
            f'<text x="{x}" y="{top - 8}" text-anchor="middle" font-size="10">{group.size}</text>'
        )
    for row, name in enumerate(names):
        y = top + row * cell
        parts.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end">{_escape(name)}</text>'
        )
        for column, group in enumerate(groups):
            roles = sorted(
                {_ROLE_LETTER[m.role] for m in group.members if m.layer.name == name},
                key="OCI".index,
            )
            if not roles:
                continue
            x = left + column * cell
            fill = _PALETTE[column % len(_PALETTE)] if group.prunable else "url(#hatch)"
            parts.append(
                f'<rect x="{x + 2}" y="{y + 2}" width="{cell - 4}" height="{cell - 4}" rx="4" '
                f'fill="{fill}"/><text x="{x + cell / 2}" y="{y + cell / 2 + 4}" '
                f'text-anchor="middle" font-weight="bold">{"".join(roles)}</text>'
            )
    y = top + cell * len(names) + 20
    parts.append(
        f'<text x="10" y="{y}" font-size="11">O creates the channels · C per-channel weights · '
        "I consumes them · hatched: kept whole</text>"
    )
    for offset, group in enumerate(kept):
        parts.append(
            f'<text x="10" y="{y + 18 * (offset + 1)}" font-size="11">g{group.index} kept: '
            f"{_escape(str(group.reason))}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
