"""extract_answer on real-world response shapes; strip_reasoning and is_well_formatted edge cases."""

from __future__ import annotations

import pytest

from longvila_r1.evaluation import extract_answer, is_well_formatted, strip_reasoning

OPTIONS = ["red square", "blue circle", "green star", "yellow cat"]

# (response, expected with OPTIONS, expected without options); ids say which shape each row covers.
CASES = {
    # The tagged answer is final.
    "tag": ("<think>the circle comes later</think><answer>B</answer>", "B", "B"),
    "tag lower case, spaces": ("<answer> b </answer>", "B", "B"),
    "tag upper-case name": ("<ANSWER>D</ANSWER>", "D", "D"),
    "tag newlines": ("<answer>\nC\n</answer>", "C", "C"),
    "tag parenthesised": ("<answer>(B)</answer>", "B", "B"),
    "tag letter and text": ("<answer>B. blue circle</answer>", "B", "B"),
    "tag 'Option B'": ("<answer>Option B</answer>", "B", "B"),
    "tag sentence": ("<answer>The answer is B</answer>", "B", "B"),
    "tag option text": ("<answer>blue circle</answer>", "B", None),
    "tag beyond options": ("<answer>E</answer>", None, None),
    "tag empty": ("<answer></answer>", None, None),
    "tag hedge": ("<answer>A or B</answer>", None, None),
    "tag two letters": ("<answer>A, B</answer>", None, None),
    "tag wins over text": ("<think>the answer is B</think><answer>A</answer> so the answer is B", "A", "A"),
    "unreadable tag is final": ("<answer>I dunno</answer> Answer: B", None, None),
    "first tag counts": ("<answer>B</answer>\n<answer>C</answer>", "B", "B"),
    "truncated close tag": ("<think>x</think><answer>B</ans", "B", "B"),
    "unclosed tag": ("<think>x</think><answer>C", "C", "C"),
    # Explicit statements.
    "Answer: B": ("Answer: B", "B", "B"),
    "answer: b": ("answer: b", "B", "B"),
    "ANSWER: B": ("ANSWER: B", "B", "B"),
    "answer:C": ("answer:C", "C", "C"),
    "The answer is: B": ("The answer is: B", "B", "B"),
    "Answer - B": ("Answer - B", "B", "B"),
    "answer with text": ("Answer: (B) blue circle", "B", "B"),
    "the answer is (c).": ("I think the answer is (c).", "C", "C"),
    "correct answer is (C)": ("The correct answer is (C).", "C", "C"),
    "correct option is C": ("The correct option is C", "C", "C"),
    "correct choice is D": ("The correct choice is D.", "D", "D"),
    "Final answer: D": ("Final answer: D", "D", "D"),
    "should be": ("So the answer should be B.", "B", "B"),
    "likely": ("The answer is likely C.", "C", "C"),
    "to this question": ("The answer to this question is B.", "B", "B"),
    "after reasoning": ("Looking at the video, the blue circle appears after the square. Answer: B", "B", "B"),
    "after a numbered list": ("1. First the square.\n2. Then the circle.\nAnswer: C", "C", "C"),
    "letter named in reasoning": ("The video shows A. Then the circle rolls. Answer: C", "C", "C"),
    "after the option list": ("A. red square\nB. blue circle\nC. green star\nD. yellow cat\nAnswer: B", "B", "B"),
    "self-correction": ("The answer is A. Wait, no, the answer is B.", "B", "B"),
    "X is correct": ("It could be A, but I think B is correct.", "B", "B"),
    "X is the correct answer": ("B is the correct answer.", "B", "B"),
    "boxed": ("$\\boxed{C}$", "C", "C"),
    "Chinese colon": ("答案：B", "B", "B"),
    "Chinese sentence": ("正确答案是C", "C", "C"),
    "Chinese choose": ("选 B", "B", "B"),
    # Markdown.
    "bold answer label": ("**Answer:** B", "B", "B"),
    "bold letter": ("The answer is **C**.", "C", "C"),
    "bold alone": ("**B**", "B", "B"),
    "heading": ("## Final Answer\n\nD", "D", "D"),
    "code span": ("Answer: `A`", "A", "A"),
    # A bare letter.
    "B": ("B", "B", "B"),
    "b": ("b", "B", "B"),
    "(B)": ("(B)", "B", "B"),
    "[B]": ("[B]", "B", "B"),
    "B.": ("B.", "B", "B"),
    "B) text": ("B) blue circle", "B", "B"),
    "B: text": ("B: blue circle", "B", "B"),
    "letter on the last line": ("The circle rolls in after the square leaves.\nB", "B", "B"),
    "option B": ("I choose option C.", "C", "C"),
    "(B) after a repeated option list": ("A. red square\nB. blue circle\n\nI pick (B)", "B", "B"),
    # Option text.
    "option text": ("It is the blue circle.", "B", None),
    "two option texts": ("It is the blue circle, not the red square.", None, None),
    # Reasoning is stripped first.
    "letters only in think": ("<think>A is wrong, C is wrong</think>The answer is B", "B", "B"),
    "truncated think": ("<think>it must be B, the circle", None, None),
    "only think": ("<think>A</think>", None, None),
    "think then letter": ("<think>hmm</think>\n\nB", "B", "B"),
    "orphan think close": ("reasoning about A and C</think>\nThe answer is B", "B", "B"),
    "tag quoted in think": ("<think>not <answer>B</answer> but</think><answer>C</answer>", "C", "C"),
    "tag only in think": ("<think>maybe <answer>B</answer></think>", None, None),
    # No answer, hedges, letters beyond the options.
    "empty": ("", None, None),
    "no answer": ("I am not sure.", None, None),
    "article a": ("a dog runs", None, None),
    "capital article": ("A dog runs.", None, None),
    "answer is a word": ("the answer is a dog", None, None),
    "answer is not": ("The answer is not A", None, None),
    "A or B": ("Either A or B.", None, None),
    "answer A or B": ("The answer is A or B", None, None),
    "two options mentioned": ("Option A shows a dog; option C shows a cat.", None, None),
    "two bracketed": ("Between (A) and (C), the video supports (C).", None, None),
    "only the option list": ("A. red square\nB. blue circle", None, None),
    "beyond options": ("The answer is E.", None, None),
    "pronoun I": ("The answer is I", None, None),
    "lower-case beyond": ("(e)", None, None),
    "plural marker": ("Which object(s) moved? (B)", "B", "B"),
    "no statement verb": ("I think it's B.", None, None),
}


@pytest.mark.parametrize(("response", "with_options", "without"), list(CASES.values()), ids=list(CASES))
def test_response_shapes(response: str, with_options: str | None, without: str | None) -> None:
    assert extract_answer(response, OPTIONS) == with_options
    assert extract_answer(response) == without


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_valid_letters_follow_the_options() -> None:
    assert extract_answer("Answer: E", options=[*OPTIONS, "purple dot"]) == "E"
    assert extract_answer("Answer: C", options=OPTIONS[:2]) is None
    assert extract_answer("Answer: F", num_options=6) == "F"
    with pytest.raises(ValueError, match="num_options"):
        extract_answer("B", num_options=0)


def test_option_text_prefers_the_longer_option() -> None:
    assert extract_answer("the red square", options=["red", "red square"]) == "B"


@pytest.mark.parametrize(
    ("response", "expected"),
    [("I cannot tell", None), ("nothing moved", None), ("I do not know", None), ("no", "B"), ("No.", "B")],
)
def test_option_text_matches_whole_words_only(response: str, expected: str | None) -> None:
    # "no" is inside "cannot", "nothing" and "know": none of them answers B.
    assert extract_answer(response, options=["yes", "no", "maybe", "never"]) == expected


def test_option_text_inside_a_longer_word_is_no_answer() -> None:
    assert extract_answer("The colour was reduced to grey.", options=["red", "grey cat", "x y"]) is None


def test_strip_reasoning() -> None:
    assert strip_reasoning("<think>a</think>b").strip() == "b"
    assert strip_reasoning("<think>unclosed").strip() == ""
    assert strip_reasoning("opened by the template</think> B").strip() == "B"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<think>x</think><answer>B</answer>", True),
        ("<think>x</think><answer>B. blue</answer>", False),
        ("<think> </think><answer>B</answer>", False),
        ("<answer>B</answer>", False),
        ("Answer: B", False),
    ],
)
def test_is_well_formatted(response: str, expected: bool) -> None:
    assert is_well_formatted(response) is expected
