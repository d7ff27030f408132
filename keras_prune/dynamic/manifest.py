"""The JSON file that lists a dynamic model's exported `.tflite` files and their measurements.

`export_widths` writes `<stem>_widths.json` (one entry per width), `export_stages` writes
`<stem>_stages.json` (one entry per stage); the runtime helpers (`WidthPicker`,
`StagedRunner`) read them. File names are stored relative to the manifest, so the folder can be
copied to a device as it is.
"""

import json
import os

from keras_prune.core import validation

WIDTHS_KIND = "keras_prune.slimmable"
STAGES_KIND = "keras_prune.early_exit"


def write_manifest(path, content):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
    return path


def read_manifest(path, kind):
    """The manifest at `path`, checked to be of `kind`, with file names made absolute."""
    path = validation.check_path("manifest", path)
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the manifest {path!r}: {error}") from error
    if not isinstance(content, dict) or content.get("kind") != kind:
        raise ValueError(
            f"Expected a {kind!r} manifest. Received: {path!r} of kind "
            f"{content.get('kind') if isinstance(content, dict) else None!r}."
        )
    directory = os.path.dirname(os.path.abspath(path))
    entries = content["widths"] if kind == WIDTHS_KIND else content["stages"]
    for entry in entries:
        entry["path"] = os.path.join(directory, entry["file"])
    return content
