"""Packaging for repeval: the `repeval` toolkit, the `encoders` families, the `repeval` command."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "repeval" / "__init__.py").read_text()).group(1)

setup(
    name="repeval",
    version=VERSION,
    description="Downstream evaluation of autoencoder latent spaces, after the ACAI paper",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["repeval", "repeval.*", "encoders", "encoders.*"]),
    package_data={"repeval": ["report/templates/*.j2"]},
    # the paper's numbers for the report, found there by non-editable installs
    data_files=[("share/repeval", ["reports/paper.json", "docs/protocol.md"])],
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.4",
        # GPU machines swap this for faiss-gpu (same module name); see README.
        "faiss-cpu>=1.8",
        "pandas>=2.1",
        "seaborn>=0.13",
        "matplotlib>=3.8",
        "click>=8.1",
        "jinja2>=3.1",
        "tqdm>=4.66",
        "pillow>=10",
        # weights of users' own encoders (python:MODULE:FACTORY --weights FILE.safetensors): loading runs no code
        "safetensors>=0.4",
        # clock's edit distance to the nearest valid string (interpolation on text)
        "rapidfuzz>=3.0",
        "tomli>=1.1; python_version < '3.11'",  # sweep grid files (tomllib from 3.11)
    ],
    extras_require={
        # `repeval sweep --launcher slurm` / `--launcher ray`
        "slurm": ["submitit>=1.5"],
        "ray": ["ray>=2.40"],
        # `repeval export --to mlflow|wandb|tensorboard` and log_to(tracker); MLflow's SQLite store
        # (its default tracking URI) needs SQLAlchemy and Alembic, which mlflow-skinny leaves out
        "mlflow": ["mlflow-skinny>=3.7", "sqlalchemy>=2", "alembic>=1.13"],
        "wandb": ["wandb>=0.19"],
        "tensorboard": ["tensorboard>=2.15"],
        # repeval.lightning.ProbeCallback
        "lightning": ["lightning>=2.2"],
        # the tests drive both engines for real (a local Ray, submitit's local executor, SLURM), the
        # trackers too (MLflow on SQLite, W&B offline, TensorBoard event files), a Lightning training,
        # the example notebook (nbclient on an ipykernel) and generated inputs (Hypothesis)
        "test": ["pytest>=8", "ruff>=0.6", "submitit>=1.5", "ray>=2.40",
                 "mlflow-skinny>=3.7", "sqlalchemy>=2", "alembic>=1.13", "wandb>=0.19", "tensorboard>=2.15",
                 "lightning>=2.2", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29", "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["repeval = repeval.cli:main"]},
)
