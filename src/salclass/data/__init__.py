"""salclass.data"""
