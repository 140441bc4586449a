"""``hubloader -vv`` prints no credential: a real S3 download (moto's server on 127.0.0.1)
with session credentials, every line of its output and log searched for the secret key, the
session token and request signatures, in every form botocore logs headers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from hub_helpers import WORKTREE

SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYzzSecretKey0"
TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENzz0123456789abcdefSessionTokenTail"


def test_verbose_s3_download_prints_no_secret(hub_env, moto_url):
    import boto3

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEKEYID0001",
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
           "HUBLOADER_S3_ENDPOINT_URL": moto_url,
           "PYTHONPATH": str(WORKTREE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                      aws_access_key_id="ASIAEXAMPLEKEYID0001", aws_secret_access_key=SECRET,
                      aws_session_token=TOKEN)
    s3.create_bucket(Bucket="secrets")
    s3.put_object(Bucket="secrets", Key="m/config.json", Body=b'{"model_type": "bert"}')
    s3.put_object(Bucket="secrets", Key="m/model.safetensors", Body=os.urandom(1 << 16))
    done = subprocess.run([sys.executable, "-m", "hubloader.cli", "-vv", "download",
                           "s3://secrets/m", "-q"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    # the client did log its headers and signing: what is checked below was there to leak
    assert any("x-amz-security-token" in line.lower() for line in lines)
    assert any("<redacted>" in line for line in lines)
    after_signature = False
    for line in lines:
        assert SECRET not in line and TOKEN not in line, line
        assert not re.search(r"(?i)signature\s*[=:]\s*[0-9a-f]{16,}", line), line
        assert not (after_signature and re.fullmatch(r"\s*[0-9a-f]{64}\s*", line)), line
        after_signature = line.rstrip().lower().endswith("signature:")
