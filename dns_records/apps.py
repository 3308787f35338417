from django.apps import AppConfig


class DnsRecordsConfig(AppConfig):
    name = "dns_records"
    verbose_name = "Domains and DNS checks"
