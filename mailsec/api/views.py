from __future__ import annotations

from rest_framework import mixins, viewsets

from mailsec.api.serializers import TaskRunSerializer
from mailsec.models import TaskRun
from mailsec.selectors import task_runs_visible


class TaskRunViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet[TaskRun]):
    """State and outcome of a background job that an endpoint answered with 202."""

    serializer_class = TaskRunSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return task_runs_visible(self.request.user).select_related("organisation")
