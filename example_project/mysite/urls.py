"""URLs of the example project."""

from django.contrib import admin
from django.urls import path
from mailroom import views

urlpatterns = [
    path("", views.compose, name="compose"),
    path("sent/", views.sent, name="sent"),
    path("admin/", admin.site.urls),
]
