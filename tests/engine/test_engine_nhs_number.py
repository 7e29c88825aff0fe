"""NHS number check digits and the Patient model that uses them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pathways.nhs_number import check_digit, is_valid, normalise
from pathways.state import Patient


@pytest.mark.parametrize("number", ["9434765919", "943 476 5870", "943-476-5870", "4010232137"])
def test_valid_numbers(number: str) -> None:
    assert is_valid(number)
    assert Patient(nhs_number=number).nhs_number == normalise(number)


def test_check_digit_arithmetic() -> None:
    assert check_digit("943476591") == 9
    assert check_digit("943476587") == 0  # 11 - 0 = 11 means 0
    assert check_digit("000000300") is None  # 3 x 4 = 12, 11 - 1 = 10: never issued


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("9434765918", "check digit is wrong"),
        ("0000003005", "check digit is wrong"),  # check 10: no valid last digit exists
        ("943476591", "10 digits"),
        ("94347659190", "10 digits"),
        ("94347659l9", "10 digits"),
        ("９４３４７６５９１９", "10 digits"),  # full-width digits are not ASCII
    ],
)
def test_invalid_numbers_are_refused_without_echoing_them(number: str, message: str) -> None:
    assert not is_valid(number)
    with pytest.raises(ValidationError) as error:
        Patient(nhs_number=number)
    text = str(error.value) + repr(error.value.errors(include_input=False))
    assert message in text
    assert number not in text and normalise(number) not in text


def test_number_must_be_text() -> None:
    with pytest.raises(ValidationError, match="given as a string"):
        Patient.model_validate({"nhs_number": 9434765919})


def test_patient_name_and_birth_date_rules() -> None:
    assert Patient(nhs_number="9434765919", birth_date="1950-02-28").birth_date == "1950-02-28"
    for bad in ({"birth_date": "1950-02-30"}, {"birth_date": "28/02/1950"}, {"name": "x" * 201},
                {"name": ""}):
        with pytest.raises(ValidationError) as error:
            Patient.model_validate({"nhs_number": "9434765919", **bad})
        assert "9434765919" not in str(error.value)
        assert "x" * 201 not in str(error.value) and "1950" not in str(error.value)
