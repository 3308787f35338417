FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    MAILSEC_DEBUG=0

RUN useradd --system --create-home --home-dir /home/mailsec --uid 10001 mailsec

# PYTHONPATH makes every process (gunicorn, celery, manage.py) import the tree in /app, so BASE_DIR is /app.
WORKDIR /app
COPY . /app
RUN pip install . && chown -R mailsec:mailsec /app

USER mailsec

# Throwaway key, used only so settings import during collectstatic; never set in the runtime environment.
ARG MAILSEC_BUILD_SECRET_KEY=collectstatic-build-only-not-a-secret
RUN MAILSEC_SECRET_KEY="$MAILSEC_BUILD_SECRET_KEY" python manage.py collectstatic --noinput

EXPOSE 8000

CMD ["gunicorn", "mailsec.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
