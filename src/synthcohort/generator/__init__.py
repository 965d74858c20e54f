"""Generator engines (native, SDV) behind one contract, with privacy safeguards."""
