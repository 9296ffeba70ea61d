"""The words of a count agree with it, in notices and in the report."""

from salclass.say import agree, counted, listed


def test_a_count_and_its_words_agree():
    assert [counted(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
    assert counted(1, "record file") + " " + agree(1, "carries", "carry") == "1 record file carries"
    assert counted(3, "record file") + " " + agree(3, "carries", "carry") == "3 record files carry"
    assert agree(0, "is", "are") == "are"


def test_names_are_listed_with_and_before_the_last():
    assert listed(["RGBS-centre"]) == "RGBS-centre"
    assert listed(["FanIn3_noS", "FanIn3-centre"]) == "FanIn3_noS and FanIn3-centre"
    assert listed(["A", "B", "C"]) == "A, B and C"
