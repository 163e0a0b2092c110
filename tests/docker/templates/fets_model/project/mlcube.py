"""MLCube handler: the FeTS template's `infer` command (typer), with its fallbacks: a parameters file
or checkpoint path that does not exist (FeTS's "null") means the ones inside the image."""
from pathlib import Path

import typer
import yaml
from src.my_logic import run_inference

app = typer.Typer()


@app.command("example")
def example(parameters_file: str = typer.Option(..., "--parameters_file")):
    print(parameters_file)  # a second command, so that typer keeps `infer` as a named command


@app.command("infer")
def infer(
    data_path: str = typer.Option(..., "--data_path"),
    output_path: str = typer.Option(..., "--output_path"),
    parameters_file: str = typer.Option(..., "--parameters_file"),
    ckpt_path: str = typer.Option(..., "--checkpoint_path"),
):
    if not Path(ckpt_path).exists():
        print("WARNING: Checkpoint path not specified or doesn't exist. Using default path instead.")
        ckpt_path = "/mlcube_project/model_ckpts"
    if not Path(parameters_file).exists():
        print("WARNING: Parameter file not specified or doesn't exist. Using default path instead.")
        parameters_file = "/mlcube_project/parameters.yaml"
    with open(parameters_file) as stream:
        parameters = yaml.safe_load(stream)
    run_inference(data_path, output_path, ckpt_path, parameters["APPLICATION_NAME"], parameters["APPLICATION_VERSION"])


if __name__ == "__main__":
    app()
