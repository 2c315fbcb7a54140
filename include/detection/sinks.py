"""Compatibility name for `destinations` (the delivery code moved to include/detection/destinations/)."""

from .destinations import (DESTINATIONS, FileTickets, IncompleteDelivery, deliver_pending,  # noqa: F401
                           destination, known)
