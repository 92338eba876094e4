"""Rooms across the cluster: queries and actions on every instance, and presence (docs/presence.md)."""

from typed_ss.cluster.api import (
    DEFAULT_TIMEOUT,
    Answer,
    Cluster,
    Listed,
    ListedMember,
    Member,
    MembersQuestion,
    Presence,
)
from typed_ss.cluster.peers import HEARTBEAT_INTERVAL, PEER_TIMEOUT, SUSPECT_FOR
from typed_ss.cluster.roster import PresenceNotice

__all__ = [
    "DEFAULT_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "PEER_TIMEOUT",
    "SUSPECT_FOR",
    "Answer",
    "Cluster",
    "Listed",
    "ListedMember",
    "Member",
    "MembersQuestion",
    "Presence",
    "PresenceNotice",
]
