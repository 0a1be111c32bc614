"""URLs for the Django tests: Django's own auth views (password reset)."""

from django.urls import include, path

urlpatterns = [path("accounts/", include("django.contrib.auth.urls"))]
