"""What the classical segmenter knows before it sees an image: typical positions and HU.

Positions are millimetres in a landmark frame (see `segmenter.Frame`): x from the centre of the
spinal canal towards the patient's right, y from the centre of the vertebral body anteriorly, z
from the top of the right diaphragm dome upwards (so the abdomen is at negative z).
x and y are divided by the patient's size factor (1 for a typical adult abdomen).

Each organ's position prior is a small mixture of Gaussians (weight, centre, covariance in mm^2)
times its typical volume, i.e. an expected occupancy: a hand-sized anatomical atlas, measured once
on phantom development cases (`harness data synth --seed 123`) and rounded. HU values are the usual
textbook windows per contrast phase, refined per image at run time.
"""

from __future__ import annotations

# FLARE22 label value -> organ name, in label order.
ORGANS: tuple[str, ...] = (
    "liver",
    "right_kidney",
    "spleen",
    "pancreas",
    "aorta",
    "inferior_vena_cava",
    "right_adrenal_gland",
    "left_adrenal_gland",
    "gallbladder",
    "esophagus",
    "stomach",
    "duodenum",
    "left_kidney",
)

Vec3 = tuple[float, float, float]
Cov3 = tuple[Vec3, Vec3, Vec3]

# organ: (typical volume cm^3, ((weight, centre mm, covariance mm^2), ...))
POSITION_PRIORS: dict[str, tuple[float, tuple[tuple[float, Vec3, Cov3], ...]]] = {
    "liver": (1580, (
        (0.28, (53, 10, -77), ((709, -277, -20), (-277, 522, -26), (-20, -26, 814))),
        (0.31, (89, 49, -105), ((390, -189, 172), (-189, 817, -41), (172, -41, 901))),
        (0.21, (18, 79, -66), ((1244, -63, -363), (-63, 293, 41), (-363, 41, 458))),
        (0.20, (72, 50, -33), ((568, -74, -74), (-74, 702, -44), (-74, -44, 243))),
    )),
    "right_kidney": (160, (
        (1.00, (63, 2, -147), ((195, 44, -155), (44, 191, -28), (-155, -28, 568))),
    )),
    "spleen": (215, (
        (1.00, (-98, 5, -77), ((229, -182, 12), (-182, 403, 43), (12, 43, 480))),
    )),
    "pancreas": (76, (
        (0.40, (28, 52, -141), ((103, -8, 14), (-8, 61, 14), (14, 14, 163))),
        (0.26, (-4, 64, -122), ((294, 36, -79), (36, 57, -7), (-79, -7, 82))),
        (0.34, (-49, 45, -109), ((412, 211, -102), (211, 160, -60), (-102, -60, 78))),
    )),
    "aorta": (90, (
        (0.23, (-17, 26, -5), ((41, -2, -11), (-2, 39, -17), (-11, -17, 357))),
        (0.54, (-11, 31, -86), ((39, 0, -47), (0, 37, -49), (-47, -49, 1909))),
        (0.23, (-7, 32, -180), ((34, 5, -41), (5, 32, -37), (-41, -37, 567))),
    )),
    "inferior_vena_cava": (102, (
        (0.18, (15, 54, -8), ((38, 1, -7), (1, 42, 12), (-7, 12, 244))),
        (0.48, (23, 42, -77), ((43, -7, -57), (-7, 70, 201), (-57, 201, 1436))),
        (0.35, (22, 31, -174), ((36, 0, -17), (0, 37, 35), (-17, 35, 1022))),
    )),
    "right_adrenal_gland": (4.5, (
        (1.00, (37, 9, -82), ((20, -8, -5), (-8, 40, 4), (-5, 4, 60))),
    )),
    "left_adrenal_gland": (4.5, (
        (1.00, (-39, 17, -97), ((19, 6, 5), (6, 39, 2), (5, 2, 59))),
    )),
    "gallbladder": (33, (
        (1.00, (47, 86, -113), ((57, 9, 9), (9, 136, 112), (9, 112, 227))),
    )),
    "esophagus": (14, (
        (0.49, (-10, 54, -8), ((36, -14, 42), (-14, 32, -44), (42, -44, 154))),
        (0.51, (-28, 63, -40), ((85, -29, 69), (-29, 34, -31), (69, -31, 101))),
    )),
    "stomach": (360, (
        (0.13, (-14, 97, -124), ((338, -26, -44), (-26, 95, 5), (-44, 5, 88))),
        (0.42, (-57, 43, -42), ((267, 3, 2), (3, 268, 11), (2, 11, 214))),
        (0.45, (-48, 80, -83), ((240, 7, -103), (7, 204, -33), (-103, -33, 455))),
    )),
    "duodenum": (77, (
        (0.26, (55, 51, -146), ((52, 0, 39), (0, 47, 14), (39, 14, 311))),
        (0.25, (-28, 57, -158), ((66, -4, -55), (-4, 50, 11), (-55, 11, 213))),
        (0.16, (32, 72, -118), ((192, -116, 20), (-116, 122, -22), (20, -22, 65))),
        (0.33, (16, 56, -180), ((408, -32, 36), (-32, 44, -12), (36, -12, 75))),
    )),
    "left_kidney": (165, (
        (1.00, (-62, 3, -133), ((202, -48, 159), (-48, 198, -52), (159, -52, 549))),
    )),
}

PHASES: tuple[str, ...] = ("plain", "arterial", "portal", "delay")

# Typical HU per phase (plain, arterial, portal, delay) of the tissues the model tells apart.
# An organ made of several tissues (kidney cortex, medulla and collecting system; stomach wall,
# content and gas) is a mixture of them, see ORGAN_TISSUES.
TISSUE_HU: dict[str, tuple[float, float, float, float]] = {
    "liver": (55, 75, 110, 95),
    "kidney_cortex": (32, 185, 175, 140),
    "kidney_medulla": (30, 75, 155, 150),
    "kidney_pelvis": (12, 12, 20, 550),
    "spleen": (45, 125, 120, 95),
    "pancreas": (42, 115, 100, 80),
    "artery": (45, 300, 165, 120),
    "vein": (43, 80, 150, 115),
    "adrenal": (28, 68, 75, 58),
    "bile": (12, 12, 14, 14),
    "gut_wall": (42, 90, 92, 72),
    "gut_content": (18, 18, 20, 20),
    "gas": (-910, -910, -910, -910),
    "muscle": (48, 52, 60, 57),
    "fat": (-100, -100, -98, -98),
}

# organ: ((tissue, weight), ...)
ORGAN_TISSUES: dict[str, tuple[tuple[str, float], ...]] = {
    "liver": (("liver", 0.95), ("vein", 0.05)),
    "right_kidney": (("kidney_cortex", 0.5), ("kidney_medulla", 0.35), ("kidney_pelvis", 0.15)),
    "spleen": (("spleen", 1.0),),
    "pancreas": (("pancreas", 1.0),),
    "aorta": (("artery", 1.0),),
    "inferior_vena_cava": (("vein", 1.0),),
    "right_adrenal_gland": (("adrenal", 1.0),),
    "left_adrenal_gland": (("adrenal", 1.0),),
    "gallbladder": (("bile", 1.0),),
    "esophagus": (("gut_wall", 0.9), ("gas", 0.1)),
    "stomach": (("gut_wall", 0.45), ("gut_content", 0.4), ("gas", 0.15)),
    "duodenum": (("gut_wall", 0.5), ("gut_content", 0.5)),
    "left_kidney": (("kidney_cortex", 0.5), ("kidney_medulla", 0.35), ("kidney_pelvis", 0.15)),
}
