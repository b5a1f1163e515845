"""The paper's published numbers (Tables 1 and 2), as data, for side-by-side columns.

Accuracy in percent at the thresholds; "All" rows are (median distance, accuracy).
Row keys are our attack names (see :mod:`dim.attacks.suites`) or ``"All <norm>"``
and ``"Minimal accuracy"``; column keys are the paper's model labels.
"""
from __future__ import annotations

TABLE1_MODELS = ("CNN", "biCNN", "Madry", "biABS", "ABS", "biDIM", "DIM")
TABLE2_MODELS = ("CNN", "singleIM", "Internal Models", "Dn-singleIM", "DIM", "biDIM")


def _row(models, values):
    return dict(zip(models, values))


TABLE1: dict[str, dict[str, object]] = {k: _row(TABLE1_MODELS, v) for k, v in {
    "Clean accuracy": (99, 99, 99, 99, 99, 96, 96),  # section 4: "DIM models 96%, the others 99%"
    "L2 DDN": (15, 71, 94, 85, 84, 92, 93),
    "L2 PGD": (30, 76, 96, 86, 88, 93, 94),
    "L2 BasicIterative": (17, 67, 95, 83, 83, 93, 94),
    "L2 FGM": (55, 92, 97, 94, 86, 94, 95),
    "L2 DeepFool": (21, 21, 95, 49, 83, 75, 89),
    "L2 CarliniWagner": (13, 10, 83, 45, 84, 51, 74),
    "L2 BrendelBethge": (12, 8, 50, 48, 93, 57, 71),
    "L2 Boundary": (19, 62, 54, 93, 90, 80, 80),
    "All L2": ((1.1, 9), (0.9, 7), (1.4, 41), (1.3, 41), (2.2, 83), (1.4, 45), (1.9, 66)),
    "Linf PGD": (0, 73, 95, 88, 11, 89, 85),
    "Linf BasicIterative": (0, 70, 96, 83, 8, 89, 82),
    "Linf FGSM": (7, 78, 96, 86, 38, 90, 89),
    "Linf DeepFool": (0, 83, 95, 86, 7, 91, 78),
    "Linf BrendelBethge": (2, 81, 94, 89, 11, 88, 9),
    "All Linf": ((0.08, 0), (0.36, 69), (0.34, 93), (0.42, 82), (0.22, 3), (0.49, 78), (0.2, 8)),
    "L0 Pointwise x10": (25, 43, 2, 82, 76, 53, 59),
    "All L0": ((8, 25), (11, 43), (4, 2), (26, 82), (19, 76), (13, 53), (14, 59)),
    "L1 BrendelBethge": (11, 4, 16, 48, 89, 65, 65),
    "All L1": ((5, 11), (3, 4), (4, 16), (8, 47), (19, 89), (13, 65), (11, 65)),
    "Minimal accuracy": (0, 4, 2, 41, 3, 45, 8),
}.items()}

TABLE2: dict[str, dict[str, object]] = {k: _row(TABLE2_MODELS, v) for k, v in {
    "L2 DDN": (15, 83, 91, 87, 93, 92),
    "L2 PGD": (30, 89, 95, 89, 94, 93),
    "L2 BasicIterative": (17, 88, 94, 90, 94, 93),
    "L2 FGM": (55, 89, 95, 90, 95, 94),
    "L2 DeepFool": (21, 71, 83, 82, 89, 75),
    "L2 CarliniWagner": (13, 54, 66, 68, 74, 51),
    "L2 BrendelBethge": (12, 61, 58, 70, 71, 57),
    "L2 Boundary": (19, 65, 67, 75, 80, 80),
    "All L2": (9, 52, 51, 65, 66, 45),
    "Linf PGD": (0, 49, 70, 72, 85, 89),
    "Linf BasicIterative": (0, 54, 61, 72, 82, 89),
    "Linf FGSM": (7, 64, 78, 79, 89, 90),
    "Linf DeepFool": (0, 44, 61, 66, 78, 91),
    "Linf BrendelBethge": (2, 2, 1, 6, 9, 88),
    "All Linf": (0, 2, 0, 6, 8, 78),
    "L0 Pointwise x10": (25, 54, 50, 58, 59, 53),
    "All L0": (25, 54, 50, 58, 59, 53),
    "L1 BrendelBethge": (11, 61, 57, 65, 65, 65),
    "All L1": (11, 61, 57, 65, 65, 65),
}.items()}

TABLES = {"table1": (TABLE1_MODELS, TABLE1), "table2": (TABLE2_MODELS, TABLE2)}

# Our models that are the paper's under another training objective: their "(paper)" column shows the
# paper's numbers of the model they reproduce (dim_paper is DIM trained with eq. 2 alone).
PAPER_COUNTERPART = {"DIM (paper objective)": "DIM", "biDIM (paper objective)": "biDIM"}
