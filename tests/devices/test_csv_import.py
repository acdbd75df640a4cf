"""Reading device imports as spreadsheets save them."""

import pytest

from dls.devices.registry import MAX_IMPORT_ROWS, ImportRow, parse_csv
from dls.errors import DomainError


def _plain(rows: list[ImportRow]) -> list[tuple[int, str, str, str, int | None, str | None]]:
    return [(r.row, r.mac, r.model, r.user, r.line, r.error) for r in rows]


@pytest.mark.parametrize(
    "text",
    [
        "mac,model,user,line\n001565000001,T46U,anna,2\n",
        # Excel in a German, French or Dutch locale: semicolons, CRLF, "CSV UTF-8"'s BOM.
        "\ufeffMAC;Model;User;Line\r\n001565000001;T46U;anna;2\r\n",
        "mac\tmodel\tuser\tline\n001565000001\tT46U\tanna\t2\n",
        # The header may name the columns in any order.
        "Line,User,MAC,Model\n2,anna,001565000001,T46U\n",
    ],
)
def test_separators_bom_and_header_order(text: str) -> None:
    assert _plain(parse_csv(text)) == [(2, "001565000001", "T46U", "anna", 2, None)]


def test_without_a_header_the_columns_are_positional() -> None:
    text = "001565000001;T46U;;\n00:15:65:00:00:02;T46U;anna;1\n"
    assert _plain(parse_csv(text)) == [
        (1, "001565000001", "T46U", "", None, None),
        (2, "00:15:65:00:00:02", "T46U", "anna", 1, None),
    ]


def test_a_quoted_separator_stays_in_its_field() -> None:
    text = 'mac;model;user;line\n001565000001;T46U;"meier;anna";1\n'
    assert _plain(parse_csv(text))[0][3] == "meier;anna"


def test_a_header_may_leave_columns_out() -> None:
    text = "mac,model\n001565000001,T46U\n"
    assert _plain(parse_csv(text)) == [(2, "001565000001", "T46U", "", None, None)]


def test_bad_rows_carry_their_error() -> None:
    text = "mac,model\n001565000001,T46U,extra\n\n001565000002,T46U\n"
    assert _plain(parse_csv(text)) == [
        (2, "001565000001", "T46U", "", None, "expected mac,model"),
        (4, "001565000002", "T46U", "", None, None),
    ]
    assert parse_csv("001565000001,T46U,,x\n")[0].error == "line must be a number"


@pytest.mark.parametrize("line", ["\u00b2", "\u0661", "9" * 5000])
def test_a_line_int_cannot_read_is_that_rows_error(line: str) -> None:
    # str.isdigit takes all three: int() raised for "²" and 5,000 digits (the whole
    # import answered 500) and read the Arabic-Indic one as line 1.
    (row,) = parse_csv(f"001565000001,T46U,,{line}\n")
    assert (row.line, row.error) == (None, "line must be a number")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("mac,modell,user", "unknown column 'modell'"),
        ("mac,user,line", "no model column"),
        ("mac,model,MAC", "a column twice"),
    ],
)
def test_a_header_it_cannot_read_refuses_the_import(header: str, message: str) -> None:
    with pytest.raises(DomainError, match=message):
        parse_csv(header + "\n001565000001,T46U,anna\n")


def test_only_the_first_row_can_be_a_header() -> None:
    rows = parse_csv("mac,model\n001565000001,T46U\nmac,model\n")
    assert [r.mac for r in rows] == ["001565000001", "mac"]


def test_row_limit() -> None:
    text = "".join(f"0015650{i:05x},T46U\n" for i in range(MAX_IMPORT_ROWS + 1))
    with pytest.raises(DomainError, match="rows per import"):
        parse_csv(text)
