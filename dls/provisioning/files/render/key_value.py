"""``key = value`` text (Yealink): config files and ``.boot`` files listing includes."""

from __future__ import annotations

from dls.provisioning.files.profiles import KeyValueFormat
from dls.provisioning.files.render.base import RenderError, RenderRequest, include_names
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FileRole, FormatFamily

__all__ = ["KeyValueRenderer"]


class KeyValueRenderer:
    """One ``key = value`` per line after the profile's header line.

    Values need no escaping: the settings model already refused line breaks and
    leading/trailing blanks, the only things this format cannot carry.
    """

    family = FormatFamily.KEY_VALUE

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, KeyValueFormat)
        lines = [spec.header]
        if request.file.role is FileRole.BOOT:
            lines += [spec.include_line.format(file=name) for name in include_names(request)]
        else:
            for key, value in vendor_values(request).values.items():
                if "\n" in value or "\r" in value:
                    raise RenderError(f"{key}: a line break cannot be written as key = value")
                lines.append(f"{key} = {value}")
        return ("\n".join(lines) + "\n").encode("utf-8")
