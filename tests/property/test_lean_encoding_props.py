"""The lean path's fast paths give exactly what the general code gives (they only skip work)."""

from __future__ import annotations

from urllib.parse import quote

from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from s3seg import leanpath

_KEYISH = st.text(alphabet=st.sampled_from("aZ09-_.~/ %+&<>\"'\t\n\x1c\xa0é€😀"), max_size=40) | st.text(max_size=40)


@given(_KEYISH)
def test_encoded_is_quote_with_botocores_safe_set(text: str) -> None:
    assert leanpath._encoded(text) == quote(text, safe=leanpath._SAFE)


@given(st.dictionaries(st.sampled_from(["x-amz-copy-source", "If-None-Match", "x-amz-meta-a"]), _KEYISH, min_size=1))
def test_signed_headers_are_canonicalised_as_botocore_does(headers: dict[str, str]) -> None:
    """The canonical request (and so the signature) of the fast path equals that of the plain trim-all rule."""
    signer = leanpath.SigV4(Credentials("AKIDEXAMPLE", "secret"), "us-east-1")
    fast = signer.sign("PUT", "h:1", "/b/k", "", dict(headers), leanpath._EMPTY_SHA256, "20260101T000000Z")
    trimmed = {name: " ".join(value.split()) for name, value in headers.items()}
    plain = signer.sign("PUT", "h:1", "/b/k", "", trimmed, leanpath._EMPTY_SHA256, "20260101T000000Z")
    assert fast["Authorization"] == plain["Authorization"]
