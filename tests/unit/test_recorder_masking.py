from mainspring.recorder.masking import MASK, is_secret_key, mask_repr, mask_value


def test_secret_keys_are_recognised_by_name_case_insensitively():
    for key in ("password", "DB_PASSWORD", "api-key", "accessToken", "client_secret", "Auth"):
        assert is_secret_key(key), key
    for key in ("user", "host", "count", "author", 3, None):
        assert not is_secret_key(key), key


def test_nested_values_under_secret_keys_are_masked_and_others_kept():
    value = {"user": "ops", "password": "hunter2", "db": {"token": "t", "port": 5432}}
    assert mask_value(value) == {
        "user": "ops",
        "password": MASK,
        "db": {"token": MASK, "port": 5432},
    }
    assert mask_value([1, {"secret": "s"}]) == [1, {"secret": MASK}]
    assert mask_value((1, 2)) == (1, 2)


def test_masking_is_idempotent():
    value = {"password": "x", "items": [{"api_key": "k"}]}
    assert mask_value(mask_value(value)) == mask_value(value)
    once = mask_repr("{'password': 'x'}")
    assert mask_repr(once) == once


def test_reprs_of_literals_are_masked():
    assert (
        mask_repr("{'user': 'ops', 'password': 'hunter2'}") == "{'user': 'ops', 'password': '***'}"
    )
    assert mask_repr("(1, 2)") == "(1, 2)"
    assert "hunter2" not in mask_repr("[{'token': 'hunter2'}]")


def test_reprs_that_are_not_literals_are_masked_by_pattern():
    text = "{'password': 'hunter2', 'when': datetime.datetime(2024, 1, 1, 0, 0), 'n': 1}"
    masked = mask_repr(text)
    assert "hunter2" not in masked
    assert "'password': '***'" in masked
    assert "datetime.datetime(2024, 1, 1, 0, 0)" in masked
    assert mask_repr("{'secret': <object at 0x1>}") == "{'secret': '***'}"
