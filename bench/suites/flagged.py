"""The single window where UEBA flags 1 in 8 Azure AD sign-ins (issue #13): the rule's right
side is no longer a few rows after the cheap filters; the scale's wall targets hold here too.
Reported as `<scale>-1in8` beside the scale."""

from __future__ import annotations

from .. import lake as lakes
from .single_window import SingleWindow


class Flagged(SingleWindow):
    name = "flagged"
    params = [["S", "M", "L"], [lakes.HIGH_UNCOMMON_SHARE]]
