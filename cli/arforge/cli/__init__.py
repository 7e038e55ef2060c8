"""The ``arforge`` command line: the embedded stack (``up``, ``down``, ``demo``) and an API client
(``submit``, ``status``, ``jobs``, ``cancel``, ``retry``, ``dlq``, ``keys``)."""
