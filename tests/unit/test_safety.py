"""The post-processing safety check behind ``contains_safety_keyword``."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelwarden.errors import InputError
from modelwarden.safety.checker import DEFAULT_PATTERNS, SafetyChecker

DANGEROUS = [
    "You can bypass the interlock to keep the line running.",
    "Jumper the safety interlock on the press while you test it.",
    "Override the light curtain so the robot cell keeps cycling.",
    "Just disable the e-stop for the rest of the shift.",
    "Disconnect the alarm if it keeps going off.",
    "Removing the guard while it is running is fine if you are quick.",
    "Skip the lockout, it only takes a minute.",
    "You can do this without lockout if the machine is idle.",
    "No need for tagout on a two-minute job.",
    "It is fine to grind without eye protection for small parts.",
    "Climb up without a harness, it is only four metres.",
    "No respirator is needed for spraying in the booth.",
    "Mix bleach and ammonia to clean the drains faster.",
    "Mixing acid with bleach removes the scale quickly.",
    "You can exceed the rated load of the hoist by 20%.",
    "Exceeding the maximum pressure briefly is fine for the test.",
    "Enter the confined space alone to save time.",
    "Hot work without a permit is fine on weekends.",
    "Reach into the running conveyor to clear the jam.",
    "BYPASS THE INTERLOCK.",  # matching is case-insensitive
]

NORMAL = [
    "The main conveyor requires lubrication every 200 operating hours. Use ISO VG 46 oil.",
    "Torque the M12 flange bolts to 85 Nm in a star pattern, then re-check after one hour.",
    "Apply lockout/tagout before opening the guard, and wear gloves and safety glasses.",
    "Check the light curtain and the e-stop at the start of each shift and log the result.",
    "Without delay, report the leak to your supervisor and close the supply valve.",
    "The sensor reads 4-20 mA; replace it if the signal drifts by more than 2%.",
    "Order spare bearings (part 6204-2RS) when stock falls below five.",
    "Hand over the open work orders and any alarms from the last eight hours.",
    "Keep the guard in place and call maintenance to clear the jam.",
    "",
]

# A safety warning is a normal answer, and the most common one a plant assistant gives.
WARNINGS = [
    "Never bypass the safety interlock; call maintenance instead.",
    "Do not exceed the rated load of the hoist.",
    "Never mix bleach and ammonia: the gas is toxic.",
    "Wear safety glasses; never work without eye protection.",
]


@pytest.fixture(scope="module")
def checker() -> SafetyChecker:
    return SafetyChecker()


@pytest.mark.parametrize("text", DANGEROUS)
def test_default_patterns_flag_dangerous_advice(checker: SafetyChecker, text: str) -> None:
    assert checker.flags(text) is True
    assert checker.matches(text), "a flagged text names the pattern it matched"


@pytest.mark.parametrize("text", NORMAL)
def test_default_patterns_pass_normal_answers(checker: SafetyChecker, text: str) -> None:
    assert checker.flags(text) is False
    assert checker.matches(text) == []


def test_none_is_not_flagged(checker: SafetyChecker) -> None:
    assert checker.flags(None) is False
    assert checker.matches(None) == []


def test_flag_many_keeps_order(checker: SafetyChecker) -> None:
    texts = [NORMAL[0], DANGEROUS[0], None, DANGEROUS[12], NORMAL[1]]
    assert checker.flag_many(texts) == [False, True, False, True, False]


def test_matches_names_each_matching_pattern(checker: SafetyChecker) -> None:
    text = "Skip the lockout and mix bleach and ammonia."
    matched = checker.matches(text)
    assert len(matched) == 2
    assert all(p in DEFAULT_PATTERNS for p in matched)


def test_safety_warnings_are_not_flagged(checker: SafetyChecker) -> None:
    # Flagging "never bypass the interlock" would count the safest answers as incidents and
    # could trip the rollback SOP on a model that warns more often.
    assert {t: checker.flags(t) for t in WARNINGS} == dict.fromkeys(WARNINGS, False)


# ---- custom rules ------------------------------------------------------------------------------
def test_custom_text_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text(
        "# plant-specific rules\n"
        "\n"
        r"\bturn\s+off\s+the\s+scrubber" + "\n"
        "   # indented comment\n"
        r"  \bsolvent\s+near\s+the\s+flame  " + "\n",
        encoding="utf-8",
    )
    c = SafetyChecker.from_file(rules)
    assert c.patterns == (r"\bturn\s+off\s+the\s+scrubber", r"\bsolvent\s+near\s+the\s+flame")
    assert c.flags("You may Turn Off the Scrubber during the night shift.") is True
    assert c.flags("Keep solvent near the flame for faster drying.") is True
    # Custom rules replace the defaults.
    assert c.flags(DANGEROUS[0]) is False


def test_custom_yaml_file(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        rules = tmp_path / f"rules{suffix}"
        rules.write_text(
            "patterns:\n"
            "  - '\\bdisable\\s+the\\s+smoke\\s+detector'\n"
            "  - 'weld\\s+near\\s+(paint|solvent)'\n",
            encoding="utf-8",
        )
        c = SafetyChecker.from_file(rules)
        assert c.patterns == (
            r"\bdisable\s+the\s+smoke\s+detector",
            r"weld\s+near\s+(paint|solvent)",
        )
        assert c.flags("Disable the smoke detector before you start.") is True
        assert c.flags("It's OK to weld near solvent tanks.") is True
        assert c.flags("Weld in the booth with the extractor on.") is False


@pytest.mark.parametrize(
    "text",
    [
        "patterns: 'just one string'\n",
        "patterns:\n  - 3\n  - 'ok'\n",
        "rules:\n  - 'x'\n",
        "- 'a list at the top'\n",
    ],
)
def test_yaml_without_a_list_of_strings(tmp_path: Path, text: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        SafetyChecker.from_file(rules)
    assert info.value.field == "patterns"
    assert "'patterns' must be a list of strings" in info.value.message


def test_invalid_regex_names_the_field_and_the_pattern() -> None:
    with pytest.raises(InputError) as info:
        SafetyChecker([r"\bok\b", r"bypass (the"])
    assert info.value.field == "patterns"
    assert "safety pattern 2 is not a valid regular expression" in info.value.message


def test_invalid_regex_in_a_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("patterns:\n  - '[unclosed'\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        SafetyChecker.from_file(rules)
    assert info.value.field == "patterns"
    assert "safety pattern 1" in info.value.message


def test_empty_rules_are_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("# nothing but comments\n\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        SafetyChecker.from_file(rules)
    assert info.value.field == "patterns"


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        SafetyChecker.from_file(tmp_path / "absent.yaml")
    assert "cannot read safety rules" in info.value.message
