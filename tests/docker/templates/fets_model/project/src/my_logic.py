"""A trivial model in the template's shape: one folder per subject in the data path, the prediction
written to <output>/<subject>.nii.gz; the checkpoint folder must hold the model (here a number)."""
from pathlib import Path

from src.utils.behave import box_label


def run_inference(input_folder: str, output_folder: str, checkpoint_folder: str, application_name: str,
                  application_version: str) -> None:
    print("*** code execution started:", application_name, "version:", application_version, "! ***")
    params_folder = Path(checkpoint_folder)
    if not params_folder.exists() or len(list(params_folder.iterdir())) == 0:
        raise FileNotFoundError(f"No model parameters found at {params_folder}")
    offset = int((params_folder / "example.ckpt").read_text())
    for subject in sorted(Path(input_folder).iterdir()):
        if subject.is_dir():
            print(f"Processing subject {subject.name}")
            image = next(subject.glob("*.nii.gz"))
            (Path(output_folder) / f"{subject.name}.nii.gz").write_bytes(box_label(image, offset=offset))
    print("*** code execution finished ***")
