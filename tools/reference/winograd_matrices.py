#!/usr/bin/env python3
"""Derives the Winograd / Toom-Cook matrices of F(m x m, 3 x 3) that Tensor+Winograd.swift hard-codes.

For the interpolation points p_0 .. p_{n-2} and infinity (n = m + 2), with exact rationals (sympy):

    A[k, i]  = p_k^i                      (the infinity row: [0 ... 0 1])
    G[k, j]  = p_k^j / prod_{l != k} (p_k - p_l)   (the infinity row: [0 0 1])
    B^T      solved from  sum_k A[k, i] G[k, j] B^T[k, l] = [l == i + j]  for all i < m, j < 3, l < n,

so that y = A^T [ (G g) * (B^T d) ] is the correlation y_i = sum_j g_j d_{i+j} (1-D; 2-D nests it on both
axes). Each row of B^T is then scaled so its first non-zero is positive (the sign moves into G's row). The
script checks every identity in exact arithmetic and prints the matrices as Swift literals.

    ~/venv/bin/python tools/reference/winograd_matrices.py
"""

from __future__ import annotations

import itertools

import sympy as sp

R = sp.Rational
POINT_SETS = {
    "f43": ("F(4x4, 3x3), points 0, 1, -1, 1/2, -2", 4, [0, 1, -1, R(1, 2), -2]),
    "f43Integer": ("F(4x4, 3x3), points 0, 1, -1, 2, -2 (Lavin & Gray)", 4, [0, 1, -1, 2, -2]),
    "f43Half": ("F(4x4, 3x3), points 0, 1, -1, 1/2, -1/2", 4, [0, 1, -1, R(1, 2), R(-1, 2)]),
    "f23": ("F(2x2, 3x3), points 0, 1, -1", 2, [0, 1, -1]),
}


def derive(points, m, r=3):
    n = m + r - 1
    pts = [sp.nsimplify(p) for p in points]
    assert len(pts) == n - 1 and len(set(pts)) == len(pts)
    A, G = sp.zeros(n, m), sp.zeros(n, r)
    for k, p in enumerate(pts):
        norm = sp.prod([p - q for q in pts if q != p])
        for i in range(m):
            A[k, i] = p ** i
        for j in range(r):
            G[k, j] = p ** j / norm
    A[n - 1, m - 1], G[n - 1, r - 1] = 1, 1
    BT = sp.zeros(n, n)
    for l in range(n):
        M = sp.Matrix([[A[k, i] * G[k, j] for k in range(n)] for i in range(m) for j in range(r)])
        b = sp.Matrix([1 if l == i + j else 0 for i in range(m) for j in range(r)])
        x = (M.T * M).LUsolve(M.T * b)
        assert M * x == b, "no exact solution"
        BT[:, l] = x
    for k in range(n):
        first = next(v for v in BT.row(k) if v != 0)
        if first < 0:
            BT[k, :] = -BT[k, :]
            G[k, :] = -G[k, :]
    return A.T, G, BT


def check(AT, G, BT, m, r=3):
    n = m + r - 1
    d = sp.Matrix(sp.symbols(f"d0:{n}"))
    g = sp.Matrix(sp.symbols(f"g0:{r}"))
    y = AT * (G * g).multiply_elementwise(BT * d)
    for i in range(m):
        assert sp.expand(y[i] - sum(g[j] * d[i + j] for j in range(r))) == 0


def swift(M):
    def lit(v):
        v = sp.Rational(v)
        return str(v.p) if v.q == 1 else f"{v.p}.0 / {v.q}"
    return "[" + ",\n ".join("[" + ", ".join(lit(v) for v in M.row(i)) + "]" for i in range(M.rows)) + "]"


if __name__ == "__main__":
    for key, (title, m, points) in POINT_SETS.items():
        AT, G, BT = derive(points, m)
        check(AT, G, BT, m)
        print(f"// {key}: {title}\nbt: {swift(BT)}\ng: {swift(G)}\nat: {swift(AT)}\n")
