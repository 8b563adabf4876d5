"""The worker's docstring parsing gives what docstring-parser's automatic
style gives, with its parsers built once (worker/docstrings.py)."""

from __future__ import annotations

import inspect

import docstring_parser
import pytest

from worker.docstrings import _parse_any_style

CORPUS = {
    "one line": "Add two integers.",
    "paragraphs": "Summary line.\n\nA longer description\nover two lines.\n\nAnd a third.",
    "no blank after summary": "Summary line.\nMore text right after.",
    "google": """Fetch rows.

        Args:
            table: The table's name.
            limit (int): How many, at most.
                Continues on a second line.
            *args: Extra positional values.
            **kwargs: Extra options.

        Returns:
            list: The rows.

        Raises:
            KeyError: If the table is missing.
        """,
    "google, no summary": """
        Args:
            x: A value.
        """,
    "numpy": """Scale a vector.

        Parameters
        ----------
        v : list of float
            The vector.
        k : float, optional
            The factor.

        Returns
        -------
        list of float
            The scaled vector.

        Examples
        --------
        >>> scale([1.0], 2)
        """,
    "rest": """Compute.

        :param a: First.
        :type a: int
        :param b: Second.
        :returns: The sum.
        :rtype: int
        :raises ValueError: Never.
        """,
    "epydoc": """Compute.

        @param a: First.
        @type a: int
        @return: The sum.
        @rtype: int
        """,
    # Two styles with entries: the one with more wins; on a tie, the first
    # in docstring-parser's order (reST, Google, NumPy, Epydoc).
    "rest and google, google has more": """Mixed.

        :param a: First.

        Args:
            a: First.
            b: Second.
        """,
    "rest and google, tie": """Mixed.

        :param a: First.

        Args:
            a: First.
        """,
    "numpy and epydoc, tie": """Mixed.

        @param a: First.

        Parameters
        ----------
        a : int
            First.
        """,
    "colons only in prose": "Note: this is not a section.\nRatio 1:2 is fine.",
    "dashes in prose": "Summary.\n\n-----\n\nA rule above.",
    "malformed rest field": "Summary.\n\n:param: nothing named\n:raises: nothing",
    "malformed google entry": "Summary.\n\nArgs:\n    no colon here\n",
    "empty": "",
    "blank": "   \n  ",
}


def _fields(doc: docstring_parser.Docstring) -> tuple:
    return (
        doc.short_description,
        doc.long_description,
        doc.blank_after_short_description,
        doc.blank_after_long_description,
        [(type(m).__name__, m.args, m.description) for m in doc.meta],
    )


def _outcome(parse, text: str) -> tuple:
    try:
        return ("ok", _fields(parse(text)))
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("raised", type(exc).__name__, str(exc))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_same_as_docstring_parsers_automatic_style(name):
    text = inspect.cleandoc(CORPUS[name])
    expected = _outcome(docstring_parser.parse, text)
    assert _outcome(_parse_any_style, text) == expected


def test_the_corpus_has_entries_from_every_style():
    # So that the comparison above exercises each parser's winning case.
    styles = set()
    for text in CORPUS.values():
        parsed = docstring_parser.parse(inspect.cleandoc(text))
        if parsed.meta:
            styles.add(parsed.style)
    assert styles == set(docstring_parser.DocstringStyle) - {docstring_parser.DocstringStyle.AUTO}
