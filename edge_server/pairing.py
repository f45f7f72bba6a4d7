"""``POST /pair``: a device trades the short code that ``classifi keys pair`` showed for a
device key of its own. Rate-limited strictly per client address (``rate_limit_pair``)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from core.errors import BadRequest
from core.wire import PairingRequest
from edge_server.limits import client_address
from edge_server.services import current

log = logging.getLogger(__name__)

bp = Blueprint("pairing", __name__)


@bp.post("/pair")
def pair() -> ResponseReturnValue:
    try:
        wanted = PairingRequest.model_validate_json(request.get_data(), strict=True)
    except ValidationError:
        raise BadRequest(
            'Send a JSON object: {"code": "K7QM-X3PD", "device": "anna-laptop"}, with the '
            "code `classifi keys pair` showed and a name for this device.",
            code="invalid_json",
        ) from None
    paired = current().app.pair(wanted)
    log.info("Paired device %r from %s: it has a key now.", paired.device, client_address())
    return jsonify(paired.to_dict()), 201
