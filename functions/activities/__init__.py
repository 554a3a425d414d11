"""Community activities (社群活动): published by admins, signed up for by residents up to the
capacity, checked in and out on site with a rotating code, closed with one idempotent award
from issuance; reminders before the start; insurance through safety's queue."""
