"""Looking at studies and their results: figures, the HTML report, exporting architectures,
and the temporal analysis of trained weights. Reads studies; never runs one."""
