"""Packings as plain Python data, for comparing them in tests."""


def as_lists(plan):
    """The packing as a list of sequences of ``(doc, start, len)`` tuples."""
    return [list(zip(*(a.tolist() for a in plan.sequence(j)))) for j in range(plan.num_sequences)]
