"""Built-in function set: small text utilities."""

import re


def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text to count words in.
    """
    return len(text.split())


def find_lines(text: str, pattern: str, ignore_case: bool = False) -> list[str]:
    """Return the lines of a text that match a regular expression.

    Args:
        text: The text to search.
        pattern: A Python regular expression.
        ignore_case: Match without regard to case.
    """
    flags = re.IGNORECASE if ignore_case else 0
    regex = re.compile(pattern, flags)
    return [line for line in text.splitlines() if regex.search(line)]
