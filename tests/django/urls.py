"""URLs for the Django tests: Django's own auth views (password reset) and the admin.

The admin is there because its templates render the auth views.
"""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
