"""Former home of the thread-order-stable products, now repalign.linalg (kept for existing importers)."""

from repalign.linalg import K_BLOCK, dot, matmul, matvec, vecmat

__all__ = ["K_BLOCK", "dot", "matmul", "matvec", "vecmat"]
