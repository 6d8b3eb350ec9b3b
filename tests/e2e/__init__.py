"""End-to-end tests: the real handler, played as CloudFormation plays a stack."""
