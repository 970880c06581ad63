# The one image of Reach D. Box: web (gunicorn), worker, migrate and the dev mailbox
# differ only by their command (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_BIND=0.0.0.0:8000

WORKDIR /app
# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY gunicorn.conf.py ./
COPY sql/ sql/
COPY tasks/ tasks/
COPY webapp/ webapp/

# An unprivileged user; /var/lib/reachdbox holds the offline log (a volume).
RUN useradd --system --uid 10001 --home-dir /app reachdbox \
    && mkdir -p /var/lib/reachdbox \
    && chown reachdbox /var/lib/reachdbox
USER reachdbox

EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"]
