"""The one exception type the engine raises for bad user input."""


class SideError(ValueError):
    """Bad input, with a message that names the problem and the fix.

    The CLI prints it without a traceback and the app shows it with ``st.error``; anything else that
    escapes the engine is a bug and keeps its traceback.
    """
