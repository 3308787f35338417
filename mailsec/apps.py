from django.apps import AppConfig


class MailsecConfig(AppConfig):
    name = "mailsec"
    verbose_name = "mailsec core"

    def ready(self) -> None:
        from mailsec import checks  # noqa: F401  (registers the system checks)
