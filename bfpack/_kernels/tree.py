"""A max segment tree stored as an implicit heap.

``tree[1]`` is the root, node ``i`` has children ``2i`` and ``2i + 1``, and
the ``width`` leaves (a power of two) sit at ``tree[width:2 * width]``.
Every internal node holds the maximum of its children, so the leftmost leaf
holding at least ``x`` is found in one walk from the root.
"""

from .._jit import jit, jit_inline


@jit
def tree_width(num_leaves):
    """Smallest power of two that holds ``num_leaves`` leaves."""
    width = 1
    while width < num_leaves:
        width *= 2
    return width


@jit_inline
def tree_set(tree, width, leaf, value):
    """Set leaf ``leaf`` (0-based) to ``value`` and repair its ancestors."""
    node = width + leaf
    tree[node] = value
    node >>= 1
    while node >= 1:
        best = max(tree[2 * node], tree[2 * node + 1])
        if tree[node] == best:
            break
        tree[node] = best
        node >>= 1


@jit_inline
def tree_leftmost_at_least(tree, width, x):
    """Index of the leftmost leaf holding ``>= x``; ``-1`` when none does."""
    if tree[1] < x:
        return -1
    node = 1
    while node < width:
        node *= 2
        if tree[node] < x:
            node += 1
    return node - width
