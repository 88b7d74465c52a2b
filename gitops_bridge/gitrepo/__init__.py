"""The only package that talks to Git.

gitops-bridge keeps a bare clone of the GitOps remote and never uses a work tree
or an index: a change is written by building only the trees it touches (blob ->
trees on its path -> commit), which costs the same in a 20-file and a
20,000-file repository. A commit becomes visible only once the remote accepted
it; a rejected push (someone else pushed first) is fetched and the change is
rebuilt on the new main (validation and quota included) a bounded number of times.
"""

from gitops_bridge.gitrepo.clone import init_bare, init_worktree
from gitops_bridge.gitrepo.decisions import DecisionLog, Record, RecordPage
from gitops_bridge.gitrepo.model import (
    CHANGES_PREFIX,
    Author,
    BranchTip,
    CommitResult,
    Deletion,
    FileChange,
    LastChange,
    LogEntry,
    blob_id,
)
from gitops_bridge.gitrepo.snapshot import Snapshot
from gitops_bridge.gitrepo.writer import GitRepo

__all__ = [
    "CHANGES_PREFIX",
    "Author",
    "BranchTip",
    "CommitResult",
    "DecisionLog",
    "Deletion",
    "FileChange",
    "GitRepo",
    "LastChange",
    "LogEntry",
    "Record",
    "RecordPage",
    "Snapshot",
    "blob_id",
    "init_bare",
    "init_worktree",
]
