"""Secrets out of messages: one function strips what a URL or an error text may carry that
grants access (presigned query strings, credentials in a URL, tokens) before hubloader
writes it into an error or a log line.

A leaf (stdlib only): :mod:`hubloader.errors` applies it to every :class:`HubLoaderError`
message, and the CLI to every log line it prints.
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "redact", "RedactingFilter"]

REDACTED = "<redacted>"

# a URL's query string: presigned S3/GCS/Azure URLs carry the signature and credential there
_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>?#]*)\?[^\s'\"<>#]*")
# user:password@ in a URL
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/'\"<>@]+@")
# key=value pairs of signing parameters and tokens outside a URL (headers echoed in errors)
_PAIRS = re.compile(
    r"(?i)\b(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|signature|awsaccesskeyid|sig|access_token|id_token|token|api_key|"
    r"apikey|password|secret|client_secret)=([^&\s'\"<>]+)")
# headers that carry a credential, as clients log them: ``name: value`` lines (botocore's
# canonical request, huggingface_hub's and urllib3's debug) and dict or repr entries
# (``'X-Amz-Security-Token': b'...'``)
_HEADER_NAMES = (r"x-amz-security-token|x-amz-signature|x-amz-credential|authorization|"
                 r"proxy-authorization|cookie|set-cookie|x-api-key|x-goog-signature|"
                 r"x-goog-credential|x-amz-server-side-encryption-customer-key|x-hf-token")
_HEADER_ENTRY = re.compile(rf"(?i)(['\"])({_HEADER_NAMES})\1(\s*:\s*)b?(['\"])(?:(?!\4).)*\4")
_HEADER_LINE = re.compile(rf"(?i)\b({_HEADER_NAMES})([ \t]*:[ \t]*)[^\s'\"][^\r\n'\"]*")
# botocore's "Signature:\n<hex>" (the request's signature on a line of its own)
_SIGNATURE_LINE = re.compile(r"(?i)\b(signature)(:\s*)[0-9a-f]{16,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{16,}")


def redact(text: str) -> str:
    """``text`` with query strings, URL credentials and tokens replaced by ``<redacted>``.

    Example:
        >>> redact("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=ab12 failed")
        'GET https://b.s3.amazonaws.com/k?<redacted> failed'
    """
    if not isinstance(text, str) or not text:
        return text
    text = _HEADER_ENTRY.sub(rf"\1\2\1\3\4{REDACTED}\4", text)
    text = _HEADER_LINE.sub(rf"\1\2{REDACTED}", text)
    text = _SIGNATURE_LINE.sub(rf"\1\2{REDACTED}", text)
    text = _QUERY.sub(rf"\1?{REDACTED}", text)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _PAIRS.sub(rf"\1={REDACTED}", text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    return _HF_TOKEN.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's formatted message (and its traceback
    text) before the handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
