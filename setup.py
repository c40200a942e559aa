from setuptools import find_packages, setup

setup(
    name="drax",
    version="0.1.0",
    description="Drax: non-autoregressive speech recognition with discrete flow matching (ESPnet-style toolkit)",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["drax", "drax.*"]),
    # Pinned, matched versions live in tools/requirements.txt (installed by tools/setup.sh).
    install_requires=[
        "torch", "torchaudio", "espnet", "kaldiio", "sentencepiece", "transformers", "safetensors",
        "jiwer", "PyYAML", "soundfile", "av", "silero-vad", "tqdm", "tensorboard", "matplotlib",
    ],
    entry_points={"console_scripts": ["drax-transcribe = drax.bin.transcribe:main"]},
)
