"""Report: consumers of the results document: the document itself, terminal summary and verdict text, HTML,
.hgrm, Prometheus text, history."""
