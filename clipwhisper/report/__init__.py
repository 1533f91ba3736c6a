"""``clipwhisper report``: one self-contained HTML page of error analysis over one or more decode folders."""
