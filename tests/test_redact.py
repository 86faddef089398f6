"""rlft.run.redact: credentials leave URLs and settings trees before anything is written or logged."""

import pytest

from rlft.run.redact import redact_secrets, redact_url

# (url, expected, why)
URLS = [
    ("http://user:PASS@judge.local:8000/v1", "http://***@judge.local:8000/v1", "user and password"),
    ("https://sk-abc123@api.example.com/v1", "https://***@api.example.com/v1", "a bare token as the user"),
    ("https://h/v1?api_key=sk-1&model=x", "https://h/v1?api_key=***&model=x", "api_key in the query"),
    ("https://h/v1?key=1&token=2&secret=3&password=4&sig=5",
     "https://h/v1?key=***&token=***&secret=***&password=***&sig=***", "each secret-looking name"),
    ("https://b.s3/x?X-Amz-Credential=AK&X-Amz-Signature=ff&X-Amz-Date=1",
     "https://b.s3/x?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1", "presigned URL parts, date kept"),
    ("https://h/v1?apiKey=s&accessToken=t", "https://h/v1?apiKey=***&accessToken=***", "camelCase names"),
    ("https://h/v1?max_tokens=3&monkey=1", "https://h/v1?max_tokens=3&monkey=1", "not secrets: counts, words"),
    ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=***&state=1", "token in the fragment"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1", "nothing to hide: unchanged"),
    ("https://h/a%20b?q=a%2Fb", "https://h/a%20b?q=a%2Fb", "unchanged byte for byte"),
    ("http://u:p@[::1]:8000/v1?token=x", "http://***@[::1]:8000/v1?token=***", "IPv6 host"),
    ("http://u:p@[::1/v1", "http://***@[::1/v1", "unparsable URL: userinfo still masked"),
]


@pytest.mark.parametrize(("url", "expected", "why"), URLS, ids=[u[2] for u in URLS])
def test_redact_url(url, expected, why):
    assert redact_url(url) == expected, why


def test_redact_url_passes_non_strings_through():
    assert redact_url(None) is None and redact_url("") == ""


def test_redact_secrets_walks_a_recipe():
    recipe = {"model": {"name": "smollm2-135m-instruct"},
              "data": {"source": "https://bob:pw@data.example.com/rows.csv"},
              "rewards": [{"name": "judge", "params": {"base_url": "http://user:PASS@judge:8000/v1",
                                                       "api_key_env": "OPENAI_API_KEY", "max_tokens": 96,
                                                       "budget_tokens": 2000, "api_key": "sk-live-123",
                                                       "extra_body": {"endpoint": "judge:1?token=t"}}}],
              "tags": ("http://x:y@h/", "plain")}
    out = redact_secrets(recipe)
    params = out["rewards"][0]["params"]
    assert params["base_url"] == "http://***@judge:8000/v1"
    assert params["api_key"] == "***"  # a key written into the recipe itself is masked whole
    assert params["api_key_env"] == "OPENAI_API_KEY"  # the variable's name is not a secret
    assert params["max_tokens"] == 96 and params["budget_tokens"] == 2000
    assert params["extra_body"]["endpoint"] == "judge:1?token=***"
    assert out["data"]["source"] == "https://***@data.example.com/rows.csv"  # any string holding ://
    assert out["tags"] == ("http://***@h/", "plain") and out["model"] == recipe["model"]
    assert recipe["rewards"][0]["params"]["base_url"] == "http://user:PASS@judge:8000/v1"  # input untouched
    flat = repr(out)
    for secret in ("PASS", "pw", "sk-live-123", "token=t"):
        assert secret not in flat, secret
