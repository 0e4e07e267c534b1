"""The glue against a stand-in for the generated bindings: no toolchain, no wasm."""

import cases
import fake_wit
import pytest


@pytest.mark.parametrize("check", cases.CHECKS, ids=lambda c: c.__name__)
def test_glue(check):
    check(fake_wit)


@pytest.mark.parametrize("values, message", cases.REJECTS)
def test_rejects_what_does_not_match_the_descriptor(values, message):
    cases.check_rejects(fake_wit, values, message)
