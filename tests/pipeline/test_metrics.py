import pytest

from pipeline.documents import Document
from pipeline.metrics import (
    best_score, exact_match, extract_choice, multiple_choice_accuracy, normalize_answer, rouge_l, score_answer,
    token_f1,
)


def test_normalisation_is_longbench_squad():
    assert normalize_answer("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"


def test_exact_match_and_token_f1():
    assert exact_match("The Paris.", "paris") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0
    assert token_f1("Paris, France", "Paris") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("the video game", "video game") == 1.0
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("", "Paris") == 0.0


def test_rouge_l_is_the_longest_common_subsequence_f_measure():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS of 4 words over 6-word prediction and 5-word reference
    assert rouge_l("the cat sat on the mat", "a cat sat on mat") == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    assert rouge_l("", "anything") == 0.0


@pytest.mark.parametrize("prediction, letter", [
    ("B", "B"), ("(C)", "C"), ("D. Because he is guilty", "D"), ("The correct answer is (A)", "A"),
    ("**The correct answer is C**", "C"), ("Answer: B", "B"), ("I choose option D.", "D"),
    ("A dog barked", None), ("the answer is a dog", None), ("", None),
])
def test_choice_extraction(prediction, letter):
    assert extract_choice(prediction) == letter


def test_multiple_choice_accuracy_also_accepts_the_option_text():
    options = ("Red", "Green", "Blue", "Black")
    assert multiple_choice_accuracy("C", "C", options) == 1.0
    assert multiple_choice_accuracy("blue.", "C", options) == 1.0
    assert multiple_choice_accuracy("B", "C", options) == 0.0
    assert multiple_choice_accuracy("no idea", "C", options) == 0.0


def test_best_score_takes_the_best_reference():
    assert best_score("New York City", ["NYC", "New York City"], token_f1) == 1.0
    assert best_score("x", [], token_f1) == 0.0


def test_score_answer_chooses_the_metric_by_document_kind():
    open_doc = Document(id="o", question="Where?", context="c", answers=("Paris", "the city of Paris"))
    assert score_answer(open_doc, "Paris") == (1.0, True)
    assert score_answer(open_doc, "London") == (0.0, False)
    rambling = "Paris is where the French government sits and people live"
    assert score_answer(open_doc, rambling) == (pytest.approx(0.2), False)  # best F1: "Paris", p=1/9, r=1
    assert score_answer(open_doc, rambling, threshold=0.1)[1]
    choice_doc = Document(id="m", question="Colour?", context="c", answers=("C",),
                          options=("Red", "Green", "Blue", "Black"))
    assert score_answer(choice_doc, "C. Blue") == (1.0, True)
    assert score_answer(choice_doc, "A") == (0.0, False)


def test_interval95_is_wilson_for_right_or_wrong_scores_and_a_fixed_bootstrap_for_graded_ones():
    from pipeline.metrics import interval95

    low, high = interval95([1.0] * 20)
    assert high == 1.0 and 0.83 < low < 0.84  # 20 of 20 cannot tell 95% from 85%
    low, high = interval95([1.0] * 19 + [0.0])
    assert low < 0.95 * 0.95 < high < 1.0
    graded = [0.2, 0.5, 0.7, 1.0, 0.9, 0.4]
    low, high = interval95(graded)
    assert low < sum(graded) / len(graded) < high and interval95(graded) == (low, high)


def test_paired_difference_sees_a_steady_lead_that_separate_intervals_hide():
    from pipeline.metrics import interval95, paired_difference95

    # Documents of very different difficulty; the student is 0.1 ahead of the parent on every one.
    parent = [0.0, 0.05, 0.2, 0.3, 0.5, 0.6, 0.8, 0.85]
    student = [p + 0.1 for p in parent]
    assert interval95(student)[0] < sum(parent) / len(parent)  # apart, the intervals overlap: no lead shown
    mean, low, high = paired_difference95(student, parent)
    assert abs(mean - 0.1) < 1e-9 and abs(low - 0.1) < 1e-9 and abs(high - 0.1) < 1e-9
    mean, low, high = paired_difference95([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0])  # wins and losses even out
    assert mean == 0.0 and low < 0.0 < high
    with pytest.raises(ValueError, match="same documents"):
        paired_difference95([1.0, 0.0], [1.0])
