"""The addresses ``interpedia import`` takes for a bucket: what a user would paste, and where it leads."""

from __future__ import annotations

import pytest

from interpedia.errors import Invalid
from interpedia.ingest.remote import RemoteLocation, is_remote, parse_location

NP = "neuronpedia-datasets"
LAB = "https://minio.lab.example"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (f"s3://{NP}/v1/", RemoteLocation(NP, "v1/")),
        (f"s3://{NP}/v1/gpt2-small/0-res-jb", RemoteLocation(NP, "v1/gpt2-small/0-res-jb/")),
        (f"s3://{NP}", RemoteLocation(NP, "")),
        # virtual-hosted style, with and without a region; the bucket's browse page; the website endpoint
        (f"https://{NP}.s3.amazonaws.com/v1/gpt2-small/res-jb/", RemoteLocation(NP, "v1/gpt2-small/res-jb/")),
        (f"https://{NP}.s3.us-east-1.amazonaws.com/v1/", RemoteLocation(NP, "v1/", region="us-east-1")),
        (
            f"https://{NP}.s3.us-east-1.amazonaws.com/index.html?prefix=v1/",
            RemoteLocation(NP, "v1/", region="us-east-1"),
        ),
        ("http://my.data.s3-website-eu-west-2.amazonaws.com/x/", RemoteLocation("my.data", "x/", region="eu-west-2")),
        # path style on AWS, and on any other server (MinIO, R2, moto): the bucket is the first part of the path
        (f"https://s3.us-west-2.amazonaws.com/{NP}/v1/", RemoteLocation(NP, "v1/", region="us-west-2")),
        ("http://127.0.0.1:9000/exports/v1/m", RemoteLocation("exports", "v1/m/", "http://127.0.0.1:9000")),
        (f"{LAB}/exports", RemoteLocation("exports", "", LAB)),
        (f"{LAB}/exports/index.html?prefix=v1%2F", RemoteLocation("exports", "v1/", LAB)),
    ],
)
def test_addresses(address: str, expected: RemoteLocation) -> None:
    assert is_remote(address)
    assert parse_location(address) == expected


def test_an_s3_address_takes_the_configured_endpoint() -> None:
    assert parse_location("s3://exports/v1", endpoint_url="http://minio:9000").endpoint_url == "http://minio:9000"


@pytest.mark.parametrize("address", ["s3:///v1/", f"{LAB}/", "ftp://host/bucket/"])
def test_addresses_without_a_bucket_are_refused(address: str) -> None:
    with pytest.raises(Invalid, match="bucket|expected"):
        parse_location(address)


@pytest.mark.parametrize("path", ["exports/v1", "/data/s3:/x", "./s3", "C:/x"])
def test_paths_are_not_addresses(path: str) -> None:
    assert not is_remote(path)
