FROM python:3.11-slim
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md ./
COPY service service
COPY workers workers
COPY models models
COPY migrations migrations
# torch is pinned in constraints.txt; the CPU wheel index keeps the image free of CUDA
# libraries on CPU workers (build with --build-arg TORCH_INDEX=... for a CUDA image).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -c constraints.txt .
RUN useradd --create-home expq
USER expq
ENTRYPOINT ["expq"]
CMD ["--help"]
