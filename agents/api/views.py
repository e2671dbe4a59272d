"""CRUD endpoints for agent profiles, customers and appointments (F-42).

Each view reads through an organisation-scoped selector (another organisation's
object is a 404), validates with its serializer and writes through one service.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from agents.api.serializers import (
    AgentProfileSerializer,
    AppointmentSerializer,
    CustomerSerializer,
)
from agents.models import AgentProfile, Appointment, Customer
from agents.selectors import agent_list, appointment_list, customer_list
from agents.services import (
    agent_profile_delete,
    agent_profile_save,
    appointment_delete,
    appointment_save,
    customer_delete,
    customer_save,
)
from callcenter.api import JSON_ONLY
from callcenter.api_docs import error_response


def crud_docs(*, plural: str, one: str) -> Any:
    """The OpenAPI summaries of a CRUD viewset, worded the same for every resource."""
    return extend_schema_view(
        list=extend_schema(summary=f"List {plural}"),
        create=extend_schema(summary=f"Create {one}"),
        retrieve=extend_schema(summary=f"Get {one}"),
        update=extend_schema(summary=f"Replace {one}"),
        partial_update=extend_schema(summary=f"Change some fields of {one}"),
        destroy=extend_schema(summary=f"Delete {one}"),
    )


class ServiceModelViewSet(viewsets.ModelViewSet):
    """A ModelViewSet whose writes go through services, not `serializer.save()`."""

    parser_classes = JSON_ONLY
    model: ClassVar[type[Model]]

    def save_instance(self, instance: Any) -> Any:
        raise NotImplementedError

    def delete_instance(self, instance: Any) -> None:
        raise NotImplementedError

    def perform_create(self, serializer: serializers.ModelSerializer) -> None:
        serializer.instance = self.save_instance(
            self.model(**serializer.validated_data)
        )

    def perform_update(self, serializer: serializers.ModelSerializer) -> None:
        instance = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(instance, name, value)
        serializer.instance = self.save_instance(instance)

    def perform_destroy(self, instance: Any) -> None:
        self.delete_instance(instance)


@extend_schema_view(
    destroy=extend_schema(
        summary="Delete an agent profile",
        responses={204: None, 409: error_response(409)},
    )
)
@crud_docs(plural="agent profiles", one="an agent profile")
class AgentProfileViewSet(ServiceModelViewSet):
    """Agent profiles (F-03), validated like the settings page."""

    serializer_class = AgentProfileSerializer
    model = AgentProfile

    def get_queryset(self) -> QuerySet[AgentProfile]:
        return agent_list(user=self.request.user)

    def save_instance(self, instance: AgentProfile) -> AgentProfile:
        return agent_profile_save(agent=instance)

    def delete_instance(self, instance: AgentProfile) -> None:
        agent_profile_delete(agent=instance)


@crud_docs(plural="customers", one="a customer")
class CustomerViewSet(ServiceModelViewSet):
    """Customers (F-06)."""

    serializer_class = CustomerSerializer
    model = Customer

    def get_queryset(self) -> QuerySet[Customer]:
        return customer_list(user=self.request.user)

    def save_instance(self, instance: Customer) -> Customer:
        return customer_save(customer=instance)

    def delete_instance(self, instance: Customer) -> None:
        customer_delete(customer=instance)


@crud_docs(plural="appointments", one="an appointment")
class AppointmentViewSet(ServiceModelViewSet):
    """Appointments (F-07)."""

    serializer_class = AppointmentSerializer
    model = Appointment

    def get_queryset(self) -> QuerySet[Appointment]:
        return appointment_list(user=self.request.user)

    def save_instance(self, instance: Appointment) -> Appointment:
        return appointment_save(appointment=instance)

    def delete_instance(self, instance: Appointment) -> None:
        appointment_delete(appointment=instance)
