"""moto's EC2 in-process, plus a side endpoint that stages a spot interruption.

AWS reclaims a spot instance by terminating it with StateReason `Server.SpotInstanceTermination`;
moto has no API for that, so this runs moto's server in this process (ThreadedMotoServer) and
answers `POST /interrupt/<region>/<instance-id>` on a second port by terminating the instance in
moto's backend and setting that state reason. Used by tests/tests/ec2_moto.rs.

usage: python moto_spot.py MOTO_PORT SIDE_PORT
"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason
from moto.server import ThreadedMotoServer

moto_port, side_port = int(sys.argv[1]), int(sys.argv[2])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
server.start()


class Interrupt(BaseHTTPRequestHandler):
    def do_POST(self):
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "interrupt":
            self.send_response(404)
            self.end_headers()
            return
        _, region, instance_id = parts
        try:
            inst = ec2_backends[DEFAULT_ACCOUNT_ID][region].get_instance(instance_id)
        except Exception as e:  # unknown id
            self.send_response(404)
            self.end_headers()
            self.wfile.write(str(e).encode())
            return
        inst.terminate()
        inst.state_reason = StateReason(
            "Server.SpotInstanceTermination: Spot instance termination",
            "Server.SpotInstanceTermination",
        )
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"interrupted")

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", side_port), Interrupt).serve_forever()
