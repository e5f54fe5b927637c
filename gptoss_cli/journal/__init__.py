"""The tamper-evident request journal: sealed, chained JSON lines (``chain``), their writer with rotation and a
defined failure behaviour (``writer``), and the checker behind ``gptoss journal verify`` (``verify``)."""
