"""Push to a Hugging Face hub repository (``hf://org/repo[@branch]``) through
``huggingface_hub.HfApi``: create the repo and branch if needed, skip files whose remote
LFS sha256 (or git blob id) matches, commit the data files, then ``config.json`` + the card
in a second commit, so the card never names a file the branch lacks.

Tested with the real ``HfApi`` against a hub-protocol server on 127.0.0.1 over the LFS
upload protocol (tests/test_push_hf.py); the hub's Xet upload path is huggingface_hub's own
and is not exercised there.
"""

from __future__ import annotations

import logging

from .. import settings
from ..errors import AccessDeniedError, NetworkError, RemoteNotFoundError
from ..hub.sources.hf import translate_error
from ..hub.digests import git_blob_sha1
from .local import LAST, LocalFile, PushResult

__all__ = ["push_hf"]

logger = logging.getLogger(__name__)


def push_hf(files: list[LocalFile], repo_id: str, *, revision: str | None,
            endpoint: str | None, token: str | None, commit_message: str | None,
            progress: bool) -> PushResult:
    """Upload ``files`` (from :func:`hubloader.publish.local_files`) to ``repo_id``.

    Returns:
        A :class:`PushResult`.

    Raises:
        RemoteNotFoundError, AccessDeniedError, NetworkError.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    branch = revision or "main"
    where = f"hf://{repo_id}@{branch}"
    result = PushResult(where)
    api = HfApi(endpoint=endpoint, token=token, library_name="hubloader",
                library_version=settings.user_agent().partition("/")[2])
    try:
        api.create_repo(repo_id, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        remote = {}
        try:
            for item in api.list_repo_tree(repo_id, recursive=True, revision=branch):
                if isinstance(item, RepoFile):
                    remote[item.path] = item
        except (RevisionNotFoundError, EntryNotFoundError):
            remote = {}
        todo = []
        for f in files:
            r = remote.get(f.path)
            same = r is not None and r.size == f.size and (
                r.lfs.sha256 == f.sha256 if r.lfs is not None else r.blob_id == git_blob_sha1(f.abspath))
            (result.skipped.append(f.path) if same else todo.append(f))
        data = [f for f in todo if f.path not in LAST]
        last = [f for f in todo if f.path in LAST]
        message = commit_message or "Upload model with hubloader"
        for batch, suffix in ((data, " (files)"), (last, " (config and card)")):
            if not batch:
                continue
            api.create_commit(repo_id, revision=branch, commit_message=message + suffix,
                              operations=[CommitOperationAdd(path_in_repo=f.path,
                                                             path_or_fileobj=str(f.abspath))
                                          for f in batch])
            result.uploaded += [f.path for f in batch]
            result.bytes_uploaded += sum(f.size for f in batch)
    except (RemoteNotFoundError, AccessDeniedError, NetworkError):
        raise
    except Exception as err:
        raise translate_error(err, where, writing=True) from err
    logger.info("pushed %s: %d uploaded, %d unchanged", where, len(result.uploaded),
                len(result.skipped))
    return result
