"""A local S3 server for the storage tests: moto's server mode, on 127.0.0.1 only.

:func:`s3_server` starts one (a free port chosen by the system) and points
the AWS environment at it: fake credentials, a region, and
``AWS_ENDPOINT_URL``, which boto3 and pyarrow's S3 file system both read.
Nothing leaves the loopback.
"""

import contextlib
import logging
import os


def aws_environment(endpoint):
    """The AWS variables that point boto3 and pyarrow at a local server."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextlib.contextmanager
def s3_server():
    """Yield ``(endpoint, boto3 client)`` of a fresh local S3 server; stop it after."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = aws_environment(endpoint)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        yield endpoint, boto3.client("s3")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
