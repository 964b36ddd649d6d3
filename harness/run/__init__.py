"""Running cells: cases and endpoints as configured (``cases``, ``endpoints``), the outcome vocabulary
(``outcomes``) and how native replies map onto it (``classify``), the forecast made before any GPU time
(``preflight``), the engine that runs cells (``engine``, ``cells``) and repeated attempts' figures
(``stats``)."""
